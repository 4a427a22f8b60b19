"""`python -m handler.settings_doc`: print the README's settings table from `Settings`."""

from __future__ import annotations

from pathlib import Path

from handler.settings import REPO_ROOT, Settings, env_name


def _default(value: object) -> str:
    if isinstance(value, Path):
        try:
            return str(value.relative_to(REPO_ROOT)) or "."
        except ValueError:
            return str(value)
    if value == "":
        return "(empty)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def settings_rows() -> list[tuple[str, str, str]]:
    return [
        (env_name(name), _default(field.default), field.description or "")
        for name, field in Settings.model_fields.items()
    ]


def settings_table() -> str:
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | `{default}` | {text} |" for name, default, text in settings_rows()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
