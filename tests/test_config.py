from __future__ import annotations

from pathlib import Path

import pytest

from backup_engine.config import load_settings
from backup_engine.errors import ConfigError
from backup_engine.storage import LocalStorage, S3Storage
from backup_engine.urls import redact


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "backup-engine.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./backup-engine.toml here
    settings = load_settings(None, env={})
    assert settings.repository.url is None
    assert settings.compression.codec == "zstd"
    assert settings.repository.part_size_mb == 5
    assert settings.postgres.dsn == ""


def test_file_then_environment_then_command_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[repository]\nurl = "s3://from-file/p"\nsse = "AES256"\n'
        '[postgres]\ndsn = "host=file"\n[compression]\nlevel = 7\n',
    )
    from_file = load_settings(path, env={})
    assert from_file.repository.url == "s3://from-file/p"
    assert from_file.repository.sse == "AES256"
    assert from_file.compression.level == 7
    from_env = load_settings(path, env={"BACKUP_ENGINE_REPOSITORY": "file:///env"})
    assert from_env.repository.url == "file:///env"
    assert from_env.postgres.dsn == "host=file"
    from_flag = load_settings(
        path,
        env={"BACKUP_ENGINE_REPOSITORY": "file:///env"},
        overrides={"repository.url": "file:///flag", "postgres.dsn": None},
    )
    assert from_flag.repository.url == "file:///flag"
    assert from_flag.postgres.dsn == "host=file"


def test_aws_endpoint_variable_is_honoured() -> None:
    settings = load_settings(None, env={"AWS_ENDPOINT_URL": "http://minio:9000"})
    assert settings.repository.s3_options().endpoint_url == "http://minio:9000"


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[repository]\nurl = "file:///x"\n')
    assert (
        load_settings(None, env={"BACKUP_ENGINE_CONFIG": str(path)}).repository.url == "file:///x"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[repo]\nurl = 'x'\n", "unknown section \\[repo\\]"),
        ("[repository]\nulr = 'x'\n", "unknown option repository.ulr"),
        ("[repository]\npart_size_mb = 'big'\n", "must be an integer"),
        ("[repository]\npart_size_mb = 1\n", "at least 5"),
        ("[repository]\nsse = 'rot13'\n", "AES256"),
        ("[compression]\ncodec = 'lzma'\n", "zstd"),
        ("[compression]\nlevel = true\n", "must be an integer"),
        ("[postgres]\ndsn = 5\n", "must be a string"),
        ("repository = 3\n", "must be a table"),
        ("[repository\n", "not valid TOML"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text), env={})


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="BACKUP_ENGINE_COMPRESSION"):
        load_settings(None, env={"BACKUP_ENGINE_COMPRESSION": "rar"})


def test_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_opening_storage_needs_a_repository() -> None:
    with pytest.raises(ConfigError, match="no repository configured"):
        load_settings(None, env={}).open_storage()


def test_open_storage_from_settings(tmp_path: Path) -> None:
    local = load_settings(None, env={"BACKUP_ENGINE_REPOSITORY": f"file://{tmp_path}"})
    assert isinstance(local.open_storage(), LocalStorage)
    s3 = load_settings(
        None, env={"BACKUP_ENGINE_REPOSITORY": "s3://b/p", "AWS_REGION": "eu-west-1"}
    )
    assert isinstance(s3.open_storage(), S3Storage)


def test_the_example_config_in_the_repository_is_valid() -> None:
    example = Path(__file__).parent.parent / "backup-engine.example.toml"
    settings = load_settings(example, env={})
    assert settings.repository.url == "s3://my-company-backups/prod"
    assert settings.retention.weekly_day == "sunday"


def test_list_options_from_file_and_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[media]\npaths = ["/a", "/b"]\n')
    assert load_settings(path, env={}).media.paths == ("/a", "/b")
    from_env = load_settings(path, env={"BACKUP_ENGINE_MEDIA_PATHS": "/x, /y"})
    assert from_env.media.paths == ("/x", "/y")
    with pytest.raises(ConfigError, match="list of strings"):
        load_settings(write(tmp_path, "[media]\npaths = 3\n"), env={})


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[repository]\nurl = "s3://b/p"\nendpoint_url = "not a url"\n', "https://host"),
        ('[repository]\nurl = "s3://b/p"\nendpoint_url = "http://h:99999"\n', "port"),
        ('[redis]\nurl = "redis://localhost:99999"\n', "port"),
        ('[redis]\nurl = "http://localhost"\n', "redis://"),
        ("[retention]\nwal_days = 9999999999\n", "at most 36500"),
        ("[compression]\nlevel = 100\n", "at most 22"),
        ("[compression]\nlevel = -100000\n", "at least -7"),
        ('[repository]\nurl = "ftp://x/y"\n', "s3://"),
    ],
)
def test_values_out_of_range_are_one_clear_line(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env={})


@pytest.mark.parametrize(
    "toml",
    [
        '[repository]\nurl = "s3://u:hunter2@bucket/p"\n',
        '[repository]\nurl = "s3://b/p"\nendpoint_url = "http://u:hunter2@minio:9000"\n',
        '[redis]\nurl = "redis://:hunter2@localhost:99999"\n',
    ],
)
def test_credentials_in_urls_are_never_printed(tmp_path: Path, toml: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as refused:
        load_settings(path, env={})
    assert "hunter2" not in str(refused.value)
    assert redact("cannot reach http://u:hunter2@h:1/x and s3://a:b@c") == (
        "cannot reach http://***@h:1/x and s3://***@c"
    )


def test_the_example_file_and_the_readme_table_come_from_the_declarations() -> None:
    from dataclasses import fields

    from backup_engine import config as config_module
    from backup_engine.options import OPTIONS
    from backup_engine.options_doc import example_file, options_table

    root = Path(__file__).parent.parent
    assert (root / "backup-engine.example.toml").read_text() == example_file(), (
        "regenerate: backup-engine config example > backup-engine.example.toml"
    )
    configuration = (root / "docs" / "configuration.md").read_text()
    assert options_table() in configuration, "regenerate the table in docs/configuration.md"
    sections = {
        name: getattr(config_module, f"{name.capitalize()}Settings")
        for name in ("repository", "compression", "postgres", "redis", "media", "retention",
                     "check", "wal", "drill")
    }  # fmt: skip
    for section, settings in sections.items():  # the typed settings hold exactly the options
        declared = [o.name for o in OPTIONS if o.section == section]
        assert sorted(f.name for f in fields(settings)) == sorted(declared), section


def test_every_option_has_a_prefixed_variable_and_config_show_says_where_from(
    tmp_path: Path,
) -> None:
    import json
    import os
    import subprocess
    import sys

    from backup_engine.options import OPTIONS

    assert all(f"BACKUP_ENGINE_{o.section}_{o.name}".upper() in o.variables for o in OPTIONS)
    config = tmp_path / "backup-engine.toml"
    config.write_text("[retention]\nmedia_days = 45\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_ENGINE", "AWS_"))}
    env.update(BACKUP_ENGINE_REPOSITORY_PART_SIZE_MB="16",
               BACKUP_ENGINE_PG_DSN="host=db user=app password=s3cret dbname=shop",
               BACKUP_ENGINE_REDIS_URL="redis://:hunter2@cache:6379/0")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "backup_engine", "--config", str(config), "--repo",
         "file:///srv/backups", "config", "show", "--json"],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = {row["option"]: (row["value"], row["from"]) for row in json.loads(done.stdout)}
    assert shown["repository.url"] == ("file:///srv/backups", "command line")
    assert shown["repository.part_size_mb"] == ("16", "$BACKUP_ENGINE_REPOSITORY_PART_SIZE_MB")
    assert shown["retention.media_days"] == ("45", str(config))
    assert shown["retention.daily_days"] == ("30", "default")
    assert "s3cret" not in done.stdout and "hunter2" not in done.stdout
    assert shown["postgres.dsn"][0] == "host=db user=app password=*** dbname=shop"
