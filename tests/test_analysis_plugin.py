"""Building the local node's analysis plugin: once, and again only when its sources change."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from nis2triage import localnode


@pytest.fixture(scope="module")
def es_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node folder whose lib/ is the real distribution's (fetched once, from Maven's cache)."""
    real = localnode.unpack(localnode.version())
    folder = tmp_path_factory.mktemp("node")
    (folder / "lib").symlink_to(real / "lib")
    (folder / "plugins").mkdir()
    return folder


def test_the_plugin_is_built_with_a_descriptor_for_the_nodes_version(es_dir: Path) -> None:
    java = localnode.pick_java(localnode.version())
    localnode.install_analysis_plugin(es_dir, java, "8.19.21")
    built = es_dir / "plugins" / localnode.ANALYSIS_PLUGIN

    descriptor = (built / "plugin-descriptor.properties").read_text()
    with zipfile.ZipFile(built / f"{localnode.ANALYSIS_PLUGIN}.jar") as jar:
        names = jar.namelist()
    assert "elasticsearch.version=8.19.21" in descriptor.splitlines()
    assert "org/nis2triage/esanalysis/SecurityAnalysisPlugin.class" in names


def test_a_second_install_with_the_same_sources_builds_nothing(es_dir: Path) -> None:
    java = localnode.pick_java(localnode.version())
    localnode.install_analysis_plugin(es_dir, java, "8.19.21")
    jar = es_dir / "plugins" / localnode.ANALYSIS_PLUGIN / f"{localnode.ANALYSIS_PLUGIN}.jar"
    before = jar.stat().st_mtime_ns

    localnode.install_analysis_plugin(es_dir, java, "8.19.21")

    assert jar.stat().st_mtime_ns == before


def test_another_version_rebuilds_with_its_own_descriptor(es_dir: Path) -> None:
    java = localnode.pick_java(localnode.version())
    localnode.install_analysis_plugin(es_dir, java, "8.19.21")

    localnode.install_analysis_plugin(es_dir, java, "8.19.20")

    descriptor = es_dir / "plugins" / localnode.ANALYSIS_PLUGIN / "plugin-descriptor.properties"
    assert "elasticsearch.version=8.19.20" in descriptor.read_text().splitlines()


def test_a_jre_without_javac_is_refused_with_what_to_install(es_dir: Path, tmp_path: Path) -> None:
    jre = tmp_path / "jre"
    (jre / "bin").mkdir(parents=True)
    shutil.rmtree(es_dir / "plugins" / localnode.ANALYSIS_PLUGIN, ignore_errors=True)

    with pytest.raises(localnode.LocalNodeError, match="needs a JDK, not only a JRE"):
        localnode.install_analysis_plugin(es_dir, jre, "8.19.21")
