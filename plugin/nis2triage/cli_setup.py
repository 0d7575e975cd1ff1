"""`nis2triage setup`: its options and the command (the work is in nis2triage.provision)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nis2triage import logs

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from nis2triage.config import AgentConfig
    from nis2triage.esclient import ESSettings
    from nis2triage.provision import SetupResult


WHAT = "create or update index templates, indices, aliases, role, Kibana objects"


def add_parser(sub: Any) -> None:
    """Add `setup` to the subcommands `sub` of the main parser."""
    setup = sub.add_parser(
        "setup",
        parents=[logs.verbose_flag()],
        help=WHAT,
        description=WHAT,
    )
    setup.add_argument("-c", "--config", required=True, help="the agent's YAML configuration")
    setup.add_argument(
        "--create-role", action="store_true", help="the agent's least-privilege role"
    )
    setup.add_argument(
        "--create-api-key",
        action="store_true",
        help="the role and an API key that carries it (printed once)",
    )
    setup.add_argument("--admin-user", help="an administrator, instead of the file's credential")
    setup.add_argument("--admin-password-env", help="variable holding that user's password")
    setup.add_argument("--admin-api-key-env", help="variable holding an administrator's API key")
    setup.add_argument("--kibana", metavar="URL", help="import the saved objects into this Kibana")
    setup.add_argument(
        "--kibana-objects",
        help="the saved objects file (default: deploy/kibana/nis2triage.ndjson in the checkout)",
    )
    setup.set_defaults(handler=cmd_setup)


def cmd_setup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from elasticsearch import ApiError

    from nis2triage import esclient, kibana, provision, roles
    from nis2triage.config import load_config
    from nis2triage.errors import ConfigError, ConnectionSetupError

    cfg = load_config(args.config)
    objects = None
    if args.kibana_objects is not None and not args.kibana:
        raise ConfigError(
            "--kibana-objects names the saved objects to import, but no --kibana URL says "
            "where: give both, or leave --kibana-objects out"
        )
    if args.kibana:
        # Checked before anything changes: a bad URL or file stops setup before it makes a key.
        problem = kibana.url_problem(args.kibana)
        if problem is not None:
            raise ConfigError(problem)
        path = Path(args.kibana_objects) if args.kibana_objects else kibana.DEFAULT_OBJECTS
        objects = kibana.checked(path, cfg.state.index_prefix)
    settings = _admin(cfg, args)
    es = esclient.connect(settings)
    # The key is made below, and printed at once, before Kibana is asked: a wait on it
    # (or an interrupt during one) lost a key that is shown once.
    request = provision.SetupRequest(create_role=args.create_role or args.create_api_key)
    try:
        result = provision.setup(es, cfg, request)
    except ApiError as exc:
        if exc.meta.status not in (401, 403):
            raise
        if exc.meta.status == 401:
            raise ConnectionSetupError(
                f"Elasticsearch refused the credential setup used (401: {exc.message}): check "
                "the user name and the password or API key in the variable you named"
            ) from exc
        raise ConnectionSetupError(
            f"setup needs an administrator's credential ({exc.meta.status}: {exc.message}); "
            "pass --admin-user with --admin-password-env, or --admin-api-key-env"
        ) from exc
    if args.create_api_key:
        _make_key(es, cfg, result)
    elif args.create_role and _role_stored(result):
        refreshed = roles.refresh_api_key(es, cfg)
        result.changes += [refreshed] if refreshed else []
    if objects is not None:
        result.changes.append(kibana.import_objects(args.kibana, objects, settings))
    print(provision.render(result))
    return 1 if result.failed else 0


def _make_key(es: Elasticsearch, cfg: AgentConfig, result: SetupResult) -> None:
    """The agent's key, if the role is there: a new one is printed at once (not with the
    summary, after Kibana), then recorded on it as shown."""
    from nis2triage import roles

    if not _role_stored(result):
        return  # roles.yml is printed instead, or this credential may not manage security
    change, key = roles.ensure_api_key(es, cfg, shown_later=True)
    result.changes.append(change)
    if key is None:
        return
    print(
        "The agent's API key, shown once: store it where api_key_env or api_key_file points",
        key.encoded,
        "",
        sep="\n",
        flush=True,
    )
    # Interrupted before this, the next setup says the key was never shown, which errs
    # on the side of making a new one.
    roles.mark_shown(es, key)


def _role_stored(result: SetupResult) -> bool:
    return not any(c.what == "role" and c.status in ("refused", "failed") for c in result.changes)


def _admin(cfg: AgentConfig, args: argparse.Namespace) -> ESSettings:
    """The administrator's credential if one is given (the file's is then not even read)."""
    from nis2triage.config import es_settings, read_secret
    from nis2triage.errors import ConfigError

    if args.admin_api_key_env:
        key = read_secret(args.admin_api_key_env, None, "administrator's API key")
        return replace(es_settings(cfg, credential=False), api_key=key)
    if args.admin_user:
        password = read_secret(args.admin_password_env, None, "administrator's password")
        return replace(
            es_settings(cfg, credential=False), username=args.admin_user, password=password
        )
    try:
        return es_settings(cfg)
    except ConfigError as exc:
        # The agent's own error pointed at `setup --create-api-key`, the very command that
        # failed: the first setup runs before the agent has any credential.
        raise ConfigError(
            f"{exc}. Without --admin-user or --admin-api-key-env, setup uses the "
            "configuration's credential; the first setup needs an administrator's: "
            "--admin-user elastic --admin-password-env ADMIN_PW (ADMIN_PW holding its "
            "password), with --create-api-key to make the agent's key"
        ) from exc
