"""The agent's configuration: one YAML file, validated once at start, never mutated.

Secrets are never in the YAML itself: the file names an environment variable
or a file that holds them, and they are read when the agent connects.
"""

from __future__ import annotations

import difflib
import glob
import ipaddress
import os
import re
import shlex
import unicodedata
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, parse_qsl, urlsplit

from elastic_transport.client_utils import url_to_node_config
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from nis2triage import yamlload
from nis2triage.errors import ConfigError
from nis2triage.esclient import ESSettings
from nis2triage.indexnames import check_expression
from nis2triage.nis2.entity import Entity
from nis2triage.records import Route
from nis2triage.rules.options import FieldName, Filter

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


# Said with every duration refused: `bucket: 5` is five seconds, which a reader of only
# the unit forms would not guess.
_DURATION_FORMS = "write it like 30s, 5m, 1h or 2d (a bare number is seconds)"


def parse_duration(value: Any) -> timedelta:
    """'30s', '5m', '1h', '2d' or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != value:  # NaN: timedelta's own error spoke of integers
            raise ValueError(f"{value!r} is not a duration: {_DURATION_FORMS}")
        try:
            return timedelta(seconds=value)
        except OverflowError as exc:
            raise ValueError(f"{value!r} is too long a duration") from exc
    found = _DURATION.match(str(value))
    if not found:
        raise ValueError(f"{value!r} is not a duration: {_DURATION_FORMS}")
    try:
        return timedelta(seconds=float(found.group(1)) * _UNIT_SECONDS[found.group(2)])
    except OverflowError as exc:
        raise ValueError(f"{value!r} is too long a duration") from exc


# The longest duration the file may give, as a rule's (rules.options.MAX_DURATION): the
# agent computes with several times some of them (the lease holds four polls), and
# 999999999d, which timedelta holds, crashed the start with an OverflowError.
MAX_DURATION = timedelta(days=366)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    if value > MAX_DURATION:
        raise ValueError(
            f"{value.days}d is longer than the longest duration the file may give, "
            f"{MAX_DURATION.days}d (a year); write at most '{MAX_DURATION.days}d'"
        )
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
# One item of an index list: a name, pattern or several of them joined by commas.
IndexExpression = Annotated[str, AfterValidator(check_expression)]


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _node_address_problem(url: str) -> str | None:
    """Why `url` names no Elasticsearch node as the client reads it, or None."""
    # Never said with its password: a log or a terminal must not show it.
    shown = repr(re.sub(r"//[^/@]*@", "//", url))
    try:
        node = url_to_node_config(url, use_default_ports_for_scheme=True)
    except ValueError:
        return (
            f"{shown} is no node address: write it as https://host:9200 (a port from 1 to "
            "65535, an IPv6 address in brackets)"
        )
    if node.scheme not in ("http", "https"):
        return f"{shown} has scheme {node.scheme!r}: write https:// (or http:// for a test node)"
    if not 0 < node.port < 65536:
        return f"{shown} has port {node.port}: give one from 1 to 65535 (9200 is usual)"
    if "authorization" in node.headers:
        return (
            f"{shown} holds a user name and password: give the user as username and the "
            "password through password_env or password_file"
        )
    return None


# Where the agent's Elasticsearch credential may come from, one of them at a time.
CREDENTIAL_KEYS = ("api_key_env", "api_key_file", "password_env", "password_file")


class ElasticsearchConfig(Strict):
    hosts: list[str] = Field(min_length=1)
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    api_key_env: str | None = None
    api_key_file: str | None = None
    ca_file: str | None = None
    verify_certs: bool = True
    request_timeout: Duration = timedelta(seconds=30)

    @field_validator("hosts")
    @classmethod
    def _node_addresses(cls, hosts: list[str]) -> list[str]:
        # Accepted as any text, a typo failed every command at its first request with
        # the client's traceback ("Could not parse URL").
        for host in hosts:
            problem = _node_address_problem(host)
            if problem is not None:
                raise ValueError(problem)
        return hosts

    @model_validator(mode="after")
    def _one_credential(self) -> ElasticsearchConfig:
        if self.username and not (self.password_env or self.password_file):
            raise ValueError("username needs password_env or password_file (never the password)")
        given = [k for k in CREDENTIAL_KEYS if getattr(self, k)]
        if len(given) > 1:
            # The client takes the API key over the password, and each reads the variable
            # over the file: the other was ignored without a word, yet had to be readable.
            raise ValueError(
                f"{' and '.join(given)} are given, but the agent uses one credential: keep "
                "api_key_env or api_key_file, or username with password_env or password_file"
            )
        if given and given[0].startswith("password") and not self.username:
            raise ValueError(f"{given[0]} needs username: the password alone is never sent")
        plain = [h for h in self.hosts if h.lower().startswith("http://")]
        if self.ca_file and plain:
            # The client refuses TLS options for plain-HTTP nodes, at the first request.
            raise ValueError(
                f"ca_file is for https hosts, but {plain[0]} is plain http: "
                "write https:// or remove ca_file"
            )
        return self


class SourceConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    indices: list[IndexExpression] = Field(min_length=1)
    time_field: FieldName = "@timestamp"
    # Checked as a rule's filter is at load (Lucene syntax, one DSL clause); the node
    # has the last word at start (`Source.query_refused`).
    query: Filter | None = None
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    poll_interval: Duration = timedelta(seconds=30)
    max_lateness: Duration = timedelta(minutes=5)
    # Ask the node only for events some detector of the source may take (`pushdown`);
    # false reads every event, as before, and leaves all filtering to the agent.
    push_filters: bool = True


class RulesConfig(Strict):
    """Detection rules: native rule files (each names its own index) and Sigma rule files."""

    native: list[str] = Field(default_factory=list)
    sigma: list[str] = Field(default_factory=list)
    sigma_indices: list[IndexExpression] = Field(
        default_factory=lambda: ["winlogbeat-*", "logs-windows*"]
    )
    sigma_entity_field: FieldName = "host.name"
    time_field: FieldName = "@timestamp"
    max_lateness: Duration = timedelta(minutes=5)
    initial_lookback: Duration = timedelta(hours=1)


class NotifierConfig(Strict):
    endpoint: str | None = None
    token_env: str | None = None
    mode: Literal["send", "dry-run"] = "dry-run"
    pseudonymise: bool = True
    # The addresses an incident's detections judged as where an attack came from (see
    # `lifecycle.attacker_addresses`) stay as they are in the reports: the CSIRT acts on
    # indicators, and pseudonyms of them would tell it nothing. Off: those too are replaced.
    keep_attacker_addresses: bool = True
    pseudonym_key_env: str = "NIS2TRIAGE_PSEUDONYM_KEY"
    allowed_hosts: list[str] = Field(default_factory=list)
    # How long the endpoint may stay silent (connecting, or between two reads) ...
    timeout: Duration = timedelta(seconds=10)
    # ... and how long one attempt may take in all: a drip of bytes restarts `timeout`.
    deadline: Duration = timedelta(seconds=30)
    # The most of an answer (status line, headers, body) read; past it the try has failed.
    max_answer_bytes: int = Field(default=64 * 1024, ge=1024)
    max_attempts: int = Field(default=8, ge=1)

    @field_validator("endpoint")
    @classmethod
    def _https_off_this_machine(cls, endpoint: str | None) -> str | None:
        """Reports and the bearer token go over HTTPS; plain HTTP only to this machine
        (a relay or test endpoint on loopback), never across a network."""
        if endpoint is None:
            return endpoint
        url = urlsplit(endpoint)
        shown = _without_login(endpoint)
        if "@" in url.netloc:
            # The channel sends no login from the URL: every report was refused, and the
            # password sat in the file, where no secret belongs.
            raise ValueError(
                f"{shown!r} is written with a login (user:password@) before its host, "
                "which the HTTP channel does not send (not shown here): write the endpoint "
                "without it and give its token through notifier.token_env (sent as a "
                "bearer token)"
            )
        secret = _secret_in_query(url.query)
        if secret is not None:
            raise ValueError(
                f"the endpoint's query holds {secret}=... (not shown here): a secret in the "
                "URL sits in this file and in every line that quotes it; give the token "
                "through notifier.token_env (sent as a bearer token) instead"
            )
        if url.scheme in ("http", "https"):
            _check_host_and_port(shown, url)
        if url.scheme == "https":
            return endpoint
        if url.scheme == "http" and _is_loopback(url.hostname or ""):
            return endpoint
        raise ValueError(
            f"{shown!r} is not an https:// URL: reports and the token would cross the "
            "network in clear; use the endpoint's https:// address (plain http:// is taken "
            "only for 127.0.0.1, ::1 or localhost)"
        )


# Query parameter names that carry a credential (a token, a key, a signature).
_SECRET_PARAM = re.compile(
    r"token|key|secret|passw|pwd|auth|signature|sig\b|credential|session", re.IGNORECASE
)


def _secret_in_query(query: str) -> str | None:
    """The name of a query parameter of the endpoint that carries a credential, if any."""
    for name, _ in parse_qsl(query, keep_blank_values=True):
        if _SECRET_PARAM.search(name):
            return name
    return None


def _without_login(url: str) -> str:
    """`url` as an error may quote it: without what comes before an @ in its host part."""
    return re.sub(r"(//)[^/?#]*@", r"\1", url)


def _check_host_and_port(endpoint: str, url: SplitResult) -> None:
    if not url.hostname:
        raise ValueError(f"{endpoint!r} names no host: give the endpoint's full https:// URL")
    try:
        port = url.port
    except ValueError as exc:
        raise ValueError(f"{endpoint!r}: {exc}; a port is a number from 1 to 65535") from exc
    if port == 0:
        raise ValueError(f"{endpoint!r}: port 0 is no port; a port is a number from 1 to 65535")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


ChannelName = Literal["http", "smtp", "manual"]
CorrelateBy = Literal["entity", "asset", "service"]


class SmtpConfig(Strict):
    """E-mail delivery of reports; the password comes from the environment, never the file."""

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    # STARTTLS (RFC 3207) on the submission port, or implicit TLS (RFC 8314) on 465.
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    sender: str
    recipients: list[str] = Field(min_length=1)
    # Longest silence of the server (connecting, or for one reply), and the whole session.
    timeout: Duration = timedelta(seconds=30)
    deadline: Duration = timedelta(minutes=2)

    @model_validator(mode="after")
    def _password_for_user(self) -> SmtpConfig:
        if self.username and not self.password_env:
            raise ValueError("username needs password_env (never the password itself)")
        return self

    @model_validator(mode="after")
    def _encrypted_off_this_machine(self) -> SmtpConfig:
        # As for notifier.endpoint: reports and the password cross no network in clear.
        if self.security == "none" and not _is_loopback(self.host):
            raise ValueError(
                f"security: none sends reports (and any password) to {self.host} in clear; "
                "use starttls (port 587) or tls (port 465); none is taken only for a relay "
                "on 127.0.0.1, ::1 or localhost"
            )
        return self


class IncidentsConfig(Strict):
    """How alerts become incidents, when awareness starts the clocks, and where reports go."""

    # Alerts sharing one of these keys within `window` of the incident's last alert join it.
    correlate_by: tuple[CorrelateBy, ...] = Field(default=("entity",), min_length=1)
    window: Duration = timedelta(hours=1)
    open_on_routes: tuple[Route, ...] = ("contain", "early_warning")
    # High-confidence routes: the entity is aware as soon as the agent sees them (NIS2 Art. 23(4)).
    auto_aware_routes: tuple[Route, ...] = ("contain", "early_warning")
    auto_early_warning: bool = True
    criteria: str | None = None
    escalate_before: Duration = timedelta(hours=6)
    channels: tuple[ChannelName, ...] = Field(default=("http",), min_length=1)
    report_dir: str = "reports"
    smtp: SmtpConfig | None = None
    tlp: Literal["TLP:CLEAR", "TLP:GREEN", "TLP:AMBER", "TLP:AMBER+STRICT", "TLP:RED"] = "TLP:AMBER"

    @field_validator("report_dir")
    @classmethod
    def _a_folder(cls, report_dir: str) -> str:
        # "" is read as the configuration's own folder, which then took TLP:AMBER reports;
        # a NUL stopped the agent at start with a traceback.
        if not report_dir.strip():
            raise ValueError("is empty: name the folder for report files (default: reports)")
        if "\0" in report_dir:
            raise ValueError(
                "holds a NUL character (\\0), which no file system takes in a path: write "
                "the folder's path"
            )
        return report_dir

    @model_validator(mode="after")
    def _smtp_when_used(self) -> IncidentsConfig:
        if "smtp" in self.channels and self.smtp is None:
            raise ValueError("channel smtp needs an `smtp` section (host, sender, recipients)")
        return self


# The longest prefix whose index names Elasticsearch takes (layout.check_prefix says why;
# a test keeps the two equal), said when the file is read rather than half-way through setup.
MAX_PREFIX = 221


class StateConfig(Strict):
    index_prefix: str = Field(
        default="nis2triage", pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=MAX_PREFIX
    )
    snapshot_key_env: str = "NIS2TRIAGE_SNAPSHOT_KEY"
    # A read alias over the alerts in Elastic Security's default `logs-*` pattern, so its
    # external-alerts views list them; null leaves it out.
    security_alias: str | None = Field(
        default="logs-nis2triage.alerts-default", pattern=r"^[a-z0-9][a-z0-9_.-]*$"
    )


# Where a command the agent suggests names its configuration file, not read from a file.
CONFIG_PLACEHOLDER = "<configuration file>"


class AgentConfig(Strict):
    elasticsearch: ElasticsearchConfig
    entity: Entity
    sources: list[SourceConfig] = Field(min_length=1)
    detectors: list[str] = Field(default_factory=list)
    # Detectors (by name) judged each in a process of their own (`detector_process`): for
    # a heavy one on a machine with a core to spare. None by default.
    detector_processes: list[str] = Field(default_factory=list)
    rules: RulesConfig = RulesConfig()
    triage: str | None = None
    assets: str | None = None
    notifier: NotifierConfig = NotifierConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    state: StateConfig = StateConfig()
    base_dir: str = "."
    # The file it was read from (`load_config`), for the commands the agent tells people
    # to run; not a key of the file.
    _file: str | None = PrivateAttr(default=None)

    @property
    def file(self) -> str:
        """The configuration's file, or a placeholder for one not read from a file."""
        return self._file or CONFIG_PLACEHOLDER

    @property
    def file_argument(self) -> str:
        """`file` as a shell takes it, in a command to copy; the placeholder as it is."""
        return shlex.quote(self._file) if self._file else CONFIG_PLACEHOLDER

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicates)}")
        return sources

    @model_validator(mode="after")
    def _endpoint_for_http(self) -> AgentConfig:
        n = self.notifier
        if "http" in self.incidents.channels and n.mode == "send" and not n.endpoint:
            raise ValueError(
                "mode 'send' over the http channel needs notifier.endpoint "
                "(or use mode: dry-run, or drop http from incidents.channels)"
                + self._http_by_default()
            )
        return self

    def _http_by_default(self) -> str:
        # A file without incidents.channels gets http: its author never chose it, and the
        # CCB has no API (docs/nis2.md), so the advice names the channel it does take.
        if "channels" in self.incidents.model_fields_set:
            return ""
        return (
            "; incidents.channels is [http] when not given: the CCB takes reports on its "
            "web platform, for which `channels: [manual]` writes the files a person submits"
        )

    def resolve(self, path: str) -> Path:
        """A path from the file, relative to the file's own folder."""
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else Path(self.base_dir) / p

    def detector_files(self) -> list[Path]:
        """The files the detector patterns match, in order; a file two patterns match is
        one detector, listed once."""
        return yamlload.once_each(
            Path(matched)
            for pattern in self.detectors
            for matched in sorted(glob.glob(str(self.resolve(pattern))))
        )

    def unmatched_detector_patterns(self) -> list[str]:
        return [p for p in self.detectors if not glob.glob(str(self.resolve(p)))]

    def missing_files(self) -> list[tuple[str, str]]:
        """(key, path) of every file the configuration names that does not exist."""
        named = [
            ("triage", self.triage),
            ("assets", self.assets),
            ("elasticsearch.ca_file", self.elasticsearch.ca_file),
            # Only whether they exist: validate reads no secret.
            ("elasticsearch.password_file", self.elasticsearch.password_file),
            ("elasticsearch.api_key_file", self.elasticsearch.api_key_file),
        ]
        missing = [(k, p) for k, p in named if p and not self.resolve(p).exists()]
        criteria = self.incidents.criteria
        if criteria and not self.resolve(criteria).is_dir():
            missing.append(("incidents.criteria", criteria))
        missing += [("detectors", p) for p in self.unmatched_detector_patterns()]
        patterns = [("rules.native", p) for p in self.rules.native]
        patterns += [("rules.sigma", p) for p in self.rules.sigma]
        missing += [(k, p) for k, p in patterns if not glob.glob(str(self.resolve(p)))]
        return missing

    def empty_rule_folders(self) -> list[tuple[str, str]]:
        """(key, path) of every rule path that matches only folders with no rule file in
        them (native: directly inside, as the loader reads them; Sigma: at any depth)."""
        empty = []
        for key, patterns, deep in (
            ("rules.native", self.rules.native, False),
            ("rules.sigma", self.rules.sigma, True),
        ):
            for pattern in patterns:
                matched = [Path(m) for m in glob.glob(str(self.resolve(pattern)))]
                if matched and not any(_holds_rules(m, deep) for m in matched):
                    empty.append((key, pattern))
        return empty

    def source(self, name: str) -> SourceConfig:
        for src in self.sources:
            if src.name == name:
                return src
        raise KeyError(name)


def _holds_rules(path: Path, deep: bool) -> bool:
    if not path.is_dir():
        return True
    inside = path.rglob("*") if deep else path.iterdir()
    return any(p.suffix in (".yml", ".yaml") and p.is_file() for p in inside)


def validation_error(
    located: yamlload.Located, exc: ValidationError, model: type[BaseModel]
) -> ConfigError:
    """One ConfigError listing every problem with its line, key and expectation, in the
    order of the file's lines."""
    found = []
    for err in exc.errors():
        loc = tuple(
            p for p in err["loc"] if not isinstance(p, str) or not p.startswith("function-")
        )
        line, column = located.line_of(loc), located.column_of(loc)
        # Pydantic marks an error in a mapping's key with "[key]": the key itself says it.
        key = ".".join(str(p) for p in loc if p != "[key]") or "(top level)"
        where = f"{located.path}:{line or '?'}" + (f":{column}" if column else "")
        said = f"{where}: {key}: {_plain(err)}{_hint(err, loc, model)}"
        found.append((line or 0, column or 0, said))
    found.sort(key=lambda item: item[:2])
    error = ConfigError("\n".join(said for _, _, said in found))
    error.path, error.line = located.path, next((line for line, _, _ in found if line), None)
    return error


def _plain(err: Any) -> str:
    """Pydantic's message in the file's terms: an unknown or missing key is said as such,
    and the "Value error, " our own validators' messages come with is dropped."""
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required, and missing"
    return str(err["msg"]).removeprefix("Value error, ")


def _hint(err: Any, loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    if err["type"] != "extra_forbidden" or not loc:
        return ""
    known = _known_keys(model, loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known keys: {', '.join(sorted(known))})" if known else ""


def _known_keys(model: type[BaseModel], parent: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in parent:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate the agent's YAML file; ConfigError names file, line and key."""
    located = yamlload.load_file(path)
    if not isinstance(located.data, dict):
        raise ConfigError(
            "expected a mapping with elasticsearch, entity, sources, ...", path=str(path)
        )
    data = dict(located.data)
    data.setdefault("base_dir", str(Path(path).resolve().parent))
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_error(located, exc, AgentConfig) from exc
    _refuse_detector_folders(cfg, located)
    cfg._file = str(Path(path).resolve())
    return cfg


def _refuse_detector_folders(cfg: AgentConfig, located: yamlload.Located) -> None:
    """Rule paths take folders, detector paths do not: a folder given there was read as a
    file, and the agent stopped saying only "<folder>: not a regular file"."""
    for i, pattern in enumerate(cfg.detectors):
        folders = [m for m in sorted(glob.glob(str(cfg.resolve(pattern)))) if Path(m).is_dir()]
        if folders:
            raise located.error(
                ("detectors", i),
                f"{pattern!r} matches the folder {folders[0]}, and detectors are files: "
                f"write a pattern of files, such as {str(Path(folders[0]) / '*.yml')!r}",
            )


def read_secret(env: str | None, file: str | None, what: str) -> str | None:
    """A secret from an environment variable or a file; a named but empty source is an error."""
    if env:
        # A secret file read into the variable often brings its line break along.
        value = os.environ.get(env, "").strip()
        if not value:
            raise ConfigError(f"{what}: environment variable {env} is not set")
        return _one_line(value, what, f"environment variable {env}")
    if file:
        try:
            return _one_line(Path(file).read_text().strip(), what, file)
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {file}: {exc.strerror}") from exc
    return None


def breaks_line(text: str) -> bool:
    """Whether `text` holds a control character or a line break (Unicode's too)."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


def _one_line(value: str, what: str, where: str) -> str:
    """A secret with no control character inside: it goes into a header or a login,
    where one would fail every attempt, and the error would carry the secret along."""
    if breaks_line(value):
        raise ConfigError(
            f"{what}: {where} holds a line break or another control character inside the "
            "secret; it must be one line (the value is not shown)"
        )
    return value


def es_settings(agent: AgentConfig, credential: bool = True) -> ESSettings:
    """Where and how to connect; `credential=False` leaves the file's secrets unread."""
    cfg = agent.elasticsearch

    def path(p: str | None) -> str | None:
        return str(agent.resolve(p)) if p else None

    settings = ESSettings(
        hosts=tuple(cfg.hosts),
        ca_file=path(cfg.ca_file),
        verify_certs=cfg.verify_certs,
        request_timeout=cfg.request_timeout.total_seconds(),
    )
    if not credential:
        return settings
    return replace(
        settings,
        username=cfg.username,
        password=read_secret(cfg.password_env, path(cfg.password_file), "elasticsearch password"),
        api_key=read_secret(
            cfg.api_key_env,
            path(cfg.api_key_file),
            "elasticsearch API key (`nis2triage setup --create-api-key` makes the agent's)",
        ),
    )


def credential_of(agent: AgentConfig) -> str:
    """Where the agent's Elasticsearch credential comes from, for an error that names it."""
    cfg = agent.elasticsearch
    if cfg.api_key_env:
        return f"the API key in ${cfg.api_key_env}"
    if cfg.api_key_file:
        return f"the API key in {agent.resolve(cfg.api_key_file)}"
    if cfg.password_env:
        return f"user {cfg.username}'s password in ${cfg.password_env}"
    if cfg.password_file:
        return f"user {cfg.username}'s password in {agent.resolve(cfg.password_file)}"
    return "no credential (the configuration names none)"
