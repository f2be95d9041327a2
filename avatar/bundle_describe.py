"""`avatar inspect`: what an avatar bundle is, in words (who, with whose consent, made from what and how, how good)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from avatar.bundle import Bundle


def describe(bundle: Bundle) -> str:
    """What the bundle is, in words: who, with whose consent, made from what and how, and how good it came out."""
    m = bundle.manifest
    lines = [f"avatar bundle {bundle.path}", f"name: {bundle.name}",
             f"created: {m.get('created', 'not recorded')} by {m.get('software', 'unrecorded software')}"]
    if bundle.consent:
        lines += ["consent on record:"] + [f"  {line}" for line in bundle.consent]
    else:
        lines.append("consent on record: NONE -- this bundle records no consent from the person it shows")
    sources = m.get("sources")
    if isinstance(sources, dict):
        lines.append("made from:")
        for source in sources.get("subject") or []:
            lines.append(f"  subject footage: {_file_words(source)}")
        driving = sources.get("driving")
        lines.append(f"  driving video: {_file_words(driving) if driving else 'not recorded'}")
        lines += [f"  {key}: {_value_words(value)}" for key, value in sources.items()
                  if key not in ("subject", "driving")]
    else:
        lines.append("made from: not recorded")
    frames = m.get("frames", {})
    lines.append(f"frames: {frames.get('count')} at {frames.get('fps')} fps, "
                 f"{frames.get('width')}x{frames.get('height')} pixels")
    for key, title in (("build", "how it was built"), ("driving", "driving clip analysis"),
                       ("quality", "quality report")):
        lines += _section(title, m.get(key))
    lines.append(f"files: all {len(m['files'])} verified (sha256)")
    return "\n".join(lines)


def _section(title: str, value: Any, indent: str = "") -> list[str]:
    """`title:` then `key: value` lines, nested dicts indented; "not recorded" when absent."""
    if value is None or value == {}:
        return [f"{indent}{title}: not recorded"]
    if not isinstance(value, dict):
        return [f"{indent}{title}: {_value_words(value)}"]
    lines = [f"{indent}{title}:"]
    for key, item in value.items():
        if isinstance(item, dict):
            lines += _section(str(key), item, indent + "  ")
        else:
            lines.append(f"{indent}  {key}: {_value_words(item)}")
    return lines


def _value_words(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_value_words(v) for v in value)
    return str(value)


def _file_words(source: Any) -> str:
    """'name.mp4 (12.3 MB, sha256 1234abcd…)' from a {"file", "sha256", "bytes"} record."""
    if not isinstance(source, dict):
        return str(source)
    size = source.get("bytes")
    size_words = f"{size / 1e6:.1f} MB" if isinstance(size, int) else "size not recorded"
    return f"{source.get('file', 'unnamed')} ({size_words}, sha256 {str(source.get('sha256', '?'))[:8]}…)"
