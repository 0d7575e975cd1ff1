"""`nis2triage validate PATH...`: every file an operator writes, checked before it runs.

Each file is recognised by its keys (an agent configuration, a detector spec,
a native rule, a Sigma rule, triage routes, an asset inventory, NIS2 criteria)
and loaded exactly as the agent would load it. Every problem is printed as
`file:line:column: key: what was expected`, with a suggested fix where one is
known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nis2triage import yamlload
from nis2triage.agent import check_names_apart, check_processes, check_sources
from nis2triage.assets import load_inventory
from nis2triage.config import AgentConfig, load_config
from nis2triage.detectors import load_spec, load_specs
from nis2triage.errors import ConfigError
from nis2triage.nis2.criteria import load_directory as load_criteria_folder
from nis2triage.nis2.criteria import load_file as load_criteria
from nis2triage.rulerunner import load_native, sigma_files
from nis2triage.rules.loader import load_rule
from nis2triage.rules.lookalike import how_they_differ, skeleton
from nis2triage.rules.sigma import SigmaConverter, SkippedRule
from nis2triage.triage import load_rules as load_triage

YAML_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class Finding:
    path: str
    kind: str
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def kind_of(data: Any) -> str:
    """What a YAML document is, from the keys it has."""
    if not isinstance(data, dict):
        return "unknown"
    keys = set(data)
    checks = [
        ("configuration", {"elasticsearch"} <= keys or {"sources"} <= keys),
        ("sigma rule", {"detection", "logsource"} <= keys),
        ("detector", {"features", "model"} <= keys or {"entity", "bucket"} <= keys),
        ("native rule", {"type"} <= keys and ("index" in keys or "name" in keys)),
        ("triage", "routes" in keys),
        ("assets", "assets" in keys),
        ("nis2 criteria", "criteria" in keys),
        ("compose file", "services" in keys),
    ]
    return next((kind for kind, holds in checks if holds), "unknown")


def _sigma(path: Path) -> None:
    result = SigmaConverter().load_file(path)
    if isinstance(result, SkippedRule):
        raise ConfigError(result.reason, path=result.path, line=result.line)


def _compose(path: Path) -> None:
    # deploy/compose/compose.yml is Docker Compose's to check (`docker compose config`).
    return None


def _unknown(path: Path) -> None:
    raise ConfigError(
        "cannot tell what this file is: expected an agent configuration (elasticsearch, "
        "sources), a detector (features, model), a native rule (name, type, index), a Sigma "
        "rule (logsource, detection), triage routes (routes), an inventory (assets) or NIS2 "
        "criteria (criteria)",
        path=str(path),
    )


def _configuration(path: Path, references: bool = True) -> None:
    """The file itself, then every file it names, as the agent would read them."""
    cfg = load_config(path)
    if not references:
        return
    located = yamlload.load_file(path)
    missing = [
        str(located.error(tuple(key.split(".")), f"{named!r} matches no file"))
        for key, named in cfg.missing_files()
    ]
    missing += [
        str(located.error(tuple(key.split(".")), f"{named!r} holds no rule file (.yml, .yaml)"))
        for key, named in cfg.empty_rule_folders()
    ]
    if missing:
        relative = any(not Path(named).is_absolute() for _, named in cfg.missing_files())
        where = f"relative paths are read from {path.parent}; " if relative else ""
        hint = f"\n  ({where}--no-references skips this check)"
        raise ConfigError("\n  also ".join(missing) + hint)
    specs = load_specs(cfg.detector_files())
    check_sources(cfg, specs)
    # As the agent checks at start: a misspelt name there stopped `run`, not `validate`.
    check_processes(cfg, specs, located)
    check_names_apart(cfg, specs, load_native(cfg))
    _sigma_named(cfg)
    if cfg.triage:
        load_triage(cfg.resolve(cfg.triage))
    if cfg.assets:
        load_inventory(cfg.resolve(cfg.assets))
    if cfg.incidents.criteria:
        load_criteria_folder(cfg.resolve(cfg.incidents.criteria))
    _report_folder(cfg, located)


def _report_folder(cfg: AgentConfig, located: yamlload.Located) -> None:
    """As the agent checks at start (and `incidents report` before it writes): a folder
    of another index prefix's reports is refused, said here rather than at deployment."""
    # Here, not at the top: the renderer loads fpdf2 and matplotlib, which the other
    # checks do without.
    from nis2triage.reports.render import ReportFolderError, check_claim

    folder = cfg.resolve(cfg.incidents.report_dir)
    if folder.is_file():
        raise located.error(
            ("incidents", "report_dir"),
            f"{folder} is a file, not a folder: each report would be retried for ever; "
            "point incidents.report_dir at a folder (made if missing)",
        )
    try:
        check_claim(folder, cfg.state.index_prefix)
    except ReportFolderError as exc:
        raise located.error(("incidents", "report_dir"), str(exc)) from exc
    except OSError:
        pass  # not readable from here: the agent says it at the first report


def _sigma_named(cfg: AgentConfig) -> None:
    # The agent skips a Sigma rule it cannot convert (with a warning) and runs the others;
    # validate is where that should be found, before the rule is missed in production.
    converter = SigmaConverter()
    results = [converter.load_file(f) for f in sigma_files(cfg)] if cfg.rules.sigma else []
    skipped = [str(r) for r in results if isinstance(r, SkippedRule)]
    if skipped:
        said = "\n  also ".join(skipped)
        raise ConfigError(
            f"{said}\n  (the agent would skip these Sigma rules and run without them)"
        )


LOADERS: dict[str, Callable[[Path], object]] = {
    "configuration": _configuration,
    "sigma rule": _sigma,
    "detector": load_spec,
    "native rule": load_rule,
    "triage": load_triage,
    "assets": load_inventory,
    "nis2 criteria": load_criteria,
    "compose file": _compose,
    "unknown": _unknown,
}


def files_under(paths: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES))
        else:
            found.append(path)
    return found


def check_file(path: Path, references: bool = True) -> Finding:
    try:
        kind = kind_of(yamlload.load_file(path).data)
    except ConfigError as exc:
        return Finding(str(path), "yaml", str(exc))
    try:
        if kind == "configuration":
            _configuration(path, references)
        else:
            LOADERS[kind](path)
    except ConfigError as exc:
        return Finding(str(path), kind, str(exc))
    return Finding(str(path), kind, None)


def validate(paths: Iterable[str], references: bool = True) -> list[Finding]:
    """Check every YAML file under `paths`; `references=False` skips the files a
    configuration names (for a configuration meant for another machine).

    Detectors and native rules in one folder must have names of their own, as the agent
    requires of the files it loads together: a folder is usually loaded whole. Files in
    different folders are not compared (a staging copy, or an old one kept in a subfolder
    the agent does not read, may share names), nor a file with a link to it."""
    findings: list[Finding] = []
    for path in paths:
        findings += _names_apart([check_file(p, references) for p in files_under([path])])
    return findings


# The kinds whose names must differ within what the agent loads together.
NAMED_KINDS = {"detector": "the detector", "native rule": "the rule"}


def _names_apart(findings: list[Finding]) -> list[Finding]:
    """The same findings, a valid detector or rule whose name an earlier file of its kind
    in its folder already has now failing, at its `name:` line, naming that file."""
    first: dict[tuple[str, str, Path], str] = {}
    files: dict[Path, str] = {}
    return [_with_clash(finding, first, files) for finding in findings]


def _with_clash(
    finding: Finding, first: dict[tuple[str, str, Path], str], files: dict[Path, str]
) -> Finding:
    """`finding`, failing if an earlier file of its kind in its folder (`first`, by kind,
    name and folder) has its name; `files` are the files seen, by real path."""
    if not finding.ok or finding.kind not in NAMED_KINDS:
        return finding
    located = yamlload.load_file(finding.path)
    name = located.data.get("name")
    # A link to a file already seen is that file: the agent loads it once.
    seen_as = files.setdefault(Path(finding.path).resolve(), finding.path)
    if not isinstance(name, str) or seen_as != finding.path:
        return finding
    # Rule names are free text: two that only look alike are refused as well (`lookalike`).
    key = skeleton(name) if finding.kind == "native rule" else name
    earlier = first.setdefault((finding.kind, key, Path(finding.path).parent), finding.path)
    if earlier == finding.path:
        return finding
    other = yamlload.load_file(earlier).data.get("name")
    said = (
        f"is also the name of {NAMED_KINDS[finding.kind]} in {earlier}"
        if other == name
        else f"looks like {other!r}, the name of {NAMED_KINDS[finding.kind]} in {earlier} "
        f"({how_they_differ(name, str(other))})"
    )
    problem = located.error(
        ("name",),
        f"{name!r} {said}; the agent refuses two of one name loaded together: give this one "
        "a name of its own",
    )
    return Finding(finding.path, finding.kind, str(problem))
