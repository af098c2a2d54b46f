"""Plain dicts <-> protobuf messages, driven by the message descriptors.

In: field names as in the .proto (plus a few aliases from the seeds' SDKs, e.g. `thread_id`);
enums by short name (`"preference"`, `"low_latency"`), full name (`"MEMORY_TYPE_PREFERENCE"`) or
number; timestamps as datetimes (naive = UTC), dates or ISO-8601 strings; durations as seconds,
timedeltas or `"90s"`; Struct fields as dicts; None = leave unset. Bad input raises the
InvalidArgumentError the server would (field violation = the field's path), before anything is
sent; unknown keys too (a typo must not silently drop a filter).

Out: every field; enums as lowercase short names (None when unspecified), timestamps as ISO-8601
strings (`...Z`), durations as float seconds, Struct as a dict (integral numbers as ints, as a
JSON parser would give them), unset messages and optional scalars as None.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from google.protobuf import (
    descriptor,
    duration_pb2,
    field_mask_pb2,
    json_format,
    struct_pb2,
    timestamp_pb2,
)
from google.protobuf.message import Message

from memgrpc.client.errors import InvalidArgumentError, invalid_argument

M = TypeVar("M", bound=Message)
FieldDescriptor = descriptor.FieldDescriptor
# descriptors are typed loosely: the upb runtime's classes are not the stub's
Descriptor = Any
Field = Any
Enum = Any

_TIMESTAMP = timestamp_pb2.Timestamp.DESCRIPTOR.full_name
_DURATION = duration_pb2.Duration.DESCRIPTOR.full_name
_STRUCT = struct_pb2.Struct.DESCRIPTOR.full_name
_FIELD_MASK = field_mask_pb2.FieldMask.DESCRIPTOR.full_name
_VALUE = struct_pb2.Value.DESCRIPTOR.full_name

# Names the seeds' SDKs use for our fields, per message (alias -> field).
_SEARCH_ALIASES = {
    "thread_id": "session_id",
    "type": "types",
    "from_date": "start_time",
    "to_date": "end_time",
}
ALIASES: dict[str, dict[str, str]] = {
    "memgrpc.v1.Memory": {"thread_id": "session_id", "is_archived": "archived"},
    "memgrpc.v1.ListMemoriesRequest": {**_SEARCH_ALIASES, "limit": "page_size"},
    "memgrpc.v1.SearchMemoriesRequest": _SEARCH_ALIASES,
    "memgrpc.v1.User": {"user_id": "id"},
    "memgrpc.v1.Message": {"timestamp": "create_time", "created_at": "create_time"},
    "memgrpc.v1.GetContextRequest": {"recall_strategy": "strategy", "type": "types"},
    "memgrpc.v1.ListSessionsRequest": {"status": "statuses"},
}


# -- enums ---------------------------------------------------------------------------------------
def _snake_upper(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


@cache
def _enum_prefix(enum: Enum) -> str:
    prefix = _snake_upper(enum.name) + "_"
    return prefix if all(v.name.startswith(prefix) for v in enum.values) else ""


def enum_short(enum: Enum, number: int) -> str | int | None:
    """`MEMORY_TYPE_PREFERENCE` -> `"preference"`; 0 (unspecified) -> None."""
    if number == 0:
        return None
    value = enum.values_by_number.get(number)
    if value is None:
        return number  # a value newer than this client
    name: str = value.name
    return name.removeprefix(_enum_prefix(enum)).lower()


def enum_number(enum: Enum, value: object, where: str) -> int:
    """A short name, full name or number of `enum` as its number."""
    if isinstance(value, bool):
        raise invalid_argument(
            where, f"expected a {enum.name} name, got {value!r}", wrong_type=True
        )
    if isinstance(value, int):
        if value not in enum.values_by_number:
            raise invalid_argument(where, f"{value} is not a {enum.name} value")
        return value
    if isinstance(value, str):
        prefix = _enum_prefix(enum)
        name = value.strip().upper().replace("-", "_").replace(" ", "_")
        for candidate in (name, prefix + name):
            found = enum.values_by_name.get(candidate)
            if found is not None:
                return int(found.number)
    choices = ", ".join(repr(v) for n in enum.values if (v := enum_short(enum, n.number)))
    raise invalid_argument(where, f"{value!r} is not a {enum.name}; expected one of {choices}")


# -- well-known types ----------------------------------------------------------------------------
def to_datetime(value: object, where: str) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise invalid_argument(where, f"{value!r} is not an ISO-8601 date/time") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        dt = datetime.fromtimestamp(value, UTC)
    else:
        raise invalid_argument(
            where, f"expected a datetime or ISO-8601 string, got {value!r}", wrong_type=True
        )
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _set_timestamp(ts: timestamp_pb2.Timestamp, value: object, where: str) -> None:
    ts.FromDatetime(to_datetime(value, where).astimezone(UTC))


def _set_duration(d: duration_pb2.Duration, value: object, where: str) -> None:
    if isinstance(value, timedelta):
        d.FromTimedelta(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        d.FromNanoseconds(round(value * 1e9))
    elif isinstance(value, str):
        try:
            d.FromJsonString(value.strip())
        except ValueError:
            raise invalid_argument(where, f"{value!r} is not a duration like '90s'") from None
    else:
        raise invalid_argument(
            where, f"expected seconds, a timedelta or '90s', got {value!r}", wrong_type=True
        )


def _set_struct(s: struct_pb2.Struct, value: object, where: str) -> None:
    if not isinstance(value, Mapping):
        raise invalid_argument(
            where, f"expected a dict, got {type(value).__name__}", wrong_type=True
        )
    try:
        s.Clear()
        s.update(dict(value))
    except (TypeError, ValueError) as exc:
        raise invalid_argument(where, f"not JSON-like: {exc}", wrong_type=True) from None


def _set_field_mask(fm: field_mask_pb2.FieldMask, value: object, where: str) -> None:
    paths = value.split(",") if isinstance(value, str) else value
    if not isinstance(paths, Iterable):
        raise invalid_argument(
            where, f"expected a list of field names, got {value!r}", wrong_type=True
        )
    fm.paths[:] = [str(p).strip() for p in paths]


def field_mask(paths: Iterable[str]) -> field_mask_pb2.FieldMask:
    out = field_mask_pb2.FieldMask()
    _set_field_mask(out, list(paths), "update_mask")
    return out


def set_update_mask(
    request: Any, fields: Iterable[str], update_mask: str | Iterable[str] | None
) -> None:
    """A PATCH request's mask: the given paths, else the fields the caller passed."""
    paths = list(fields) if update_mask is None else update_mask
    if paths:
        request.update_mask.CopyFrom(field_mask([paths] if isinstance(paths, str) else paths))


def _json_number(value: Any) -> Any:
    """Struct numbers are doubles; give integral ones back as ints, as JSON would."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_number(v) for v in value]
    return value


def struct_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    out: dict[str, Any] = _json_number(json_format.MessageToDict(s))
    return out


# -- dict -> message -----------------------------------------------------------------------------
def canonical(desc: Descriptor, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`data` with aliases resolved and every key checked against the message's fields."""
    aliases = ALIASES.get(desc.full_name, {})
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = aliases.get(key, key)
        if name not in desc.fields_by_name:
            known = ", ".join(sorted(desc.fields_by_name))
            raise invalid_argument(where, f"unknown field {key!r} (fields: {known})")
        if name in out:
            raise invalid_argument(where, f"{key!r} and {name!r} name the same field")
        out[name] = value
    return out


def fill(msg: Message, data: Mapping[str, Any], where: str = "") -> None:
    """Set the fields of `msg` from `data` (see the module docstring for accepted values)."""
    desc = msg.DESCRIPTOR
    where = where or desc.name
    if not isinstance(data, Mapping):
        raise invalid_argument(
            where, f"expected a dict, got {type(data).__name__}", wrong_type=True
        )
    for name, value in canonical(desc, data, where).items():
        if value is not None:
            _set(msg, desc.fields_by_name[name], value, f"{where}.{name}")


def build(cls: type[M], data: Mapping[str, Any] | None, where: str = "") -> M:
    msg = cls()
    if data is not None:
        fill(msg, data, where)
    return msg


def _scalar(field: Field, value: object, where: str) -> object:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_number(field.enum_type, value, where)
    return value


@cache
def _is_map(field: Field) -> bool:
    return bool(
        field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
    )


def _set_map(msg: Message, field: Field, value: object, where: str) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a dict, got {type(value).__name__}")
    target = getattr(msg, field.name)
    target.clear()
    value_field = field.message_type.fields_by_name["value"]
    for key, item in value.items():
        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
            _set_message(target[key], item, f"{where}.{key}")
        else:
            target[key] = _scalar(value_field, item, f"{where}.{key}")


def _set(msg: Message, field: Field, value: object, where: str) -> None:
    try:
        if _is_map(field):
            _set_map(msg, field, value, where)
        elif field.is_repeated:
            _set_repeated(msg, field, value, where)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            _set_message(getattr(msg, field.name), value, where)
        else:
            setattr(msg, field.name, _scalar(field, value, where))
    except InvalidArgumentError:
        raise
    except (TypeError, ValueError) as exc:  # protobuf's own checks (range, type)
        raise invalid_argument(where, str(exc), wrong_type=isinstance(exc, TypeError)) from None


def _set_repeated(msg: Message, field: Field, value: object, where: str) -> None:
    items = [value] if isinstance(value, str | bytes | Mapping) else value
    if not isinstance(items, Iterable):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    target = getattr(msg, field.name)
    del target[:]
    for i, item in enumerate(items):
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            _set_message(target.add(), item, f"{where}[{i}]")
        else:
            target.append(_scalar(field, item, f"{where}[{i}]"))


def _set_message(target: Message, value: object, where: str) -> None:
    kind = target.DESCRIPTOR.full_name
    if isinstance(value, Message):
        target.CopyFrom(value)
    elif kind == _TIMESTAMP:
        _set_timestamp(target, value, where)  # type: ignore[arg-type]
    elif kind == _DURATION:
        _set_duration(target, value, where)  # type: ignore[arg-type]
    elif kind == _STRUCT:
        _set_struct(target, value, where)  # type: ignore[arg-type]
    elif kind == _FIELD_MASK:
        _set_field_mask(target, value, where)  # type: ignore[arg-type]
    elif kind == _VALUE:  # any JSON value
        json_format.ParseDict(value, target)  # type: ignore[arg-type]
    elif isinstance(value, Mapping):
        target.SetInParent()
        fill(target, value, where)
    else:
        raise TypeError(f"expected a dict, got {type(value).__name__}")


# -- message -> dict -----------------------------------------------------------------------------
def to_dict(msg: Message) -> dict[str, Any]:
    """Every field of `msg` as plain Python values (see the module docstring)."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        out[field.name] = _field_value(msg, field)
    return out


def _field_value(msg: Message, field: Field) -> Any:
    value = getattr(msg, field.name)
    if _is_map(field):
        item = field.message_type.fields_by_name["value"]
        return {k: _item(item, v) for k, v in value.items()}
    if field.is_repeated:
        return [_item(field, v) for v in value]
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == _STRUCT:
            return struct_dict(value) if msg.HasField(field.name) else {}
        return _item(field, value) if msg.HasField(field.name) else None
    if field.has_presence and not msg.HasField(field.name):
        return None
    return _item(field, value)


def _float32(value: float) -> float:
    """The shortest decimal that is the same float32 (0.7, not 0.699999988079071)."""
    if not math.isfinite(value):
        return value
    for digits in range(6, 10):
        short = float(f"{value:.{digits}g}")
        if struct.unpack("f", struct.pack("f", short))[0] == value:
            return short
    return value


def _item(field: Field, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_FLOAT:
        return _float32(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_short(field.enum_type, value)
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return value
    return message_value(value)


def message_value(value: Message) -> Any:
    kind = value.DESCRIPTOR.full_name
    if kind == _TIMESTAMP:
        return value.ToJsonString()  # type: ignore[attr-defined]
    if kind == _DURATION:
        return value.seconds + value.nanos / 1e9  # type: ignore[attr-defined]
    if kind == _STRUCT:
        return struct_dict(value)  # type: ignore[arg-type]
    if kind == _FIELD_MASK:
        return list(value.paths)  # type: ignore[attr-defined]
    if kind == _VALUE:
        return _json_number(json_format.MessageToDict(value))
    return to_dict(value)


def mask_paths(desc: Descriptor, data: Mapping[str, Any], *, skip: Iterable[str] = ()) -> list[str]:
    """The update_mask a PATCH with `data` means: every key given (None clears a field)."""
    skipped = set(skip)
    return [k for k in canonical(desc, data, desc.name) if k not in skipped]


def params(data: Mapping[str, Any] | None, fields: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A dict argument and keyword arguments as one dict (`f({"a": 1}, b=2)` or `f(a=1, b=2)`)."""
    if data is not None and not isinstance(data, Mapping):
        raise invalid_argument(
            where, f"expected a dict, got {type(data).__name__}", wrong_type=True
        )
    out = dict(data or {})
    for key, value in fields.items():
        if key in out:
            raise invalid_argument(where, f"{key!r} given twice")
        out[key] = value
    return out


def pop_request_id(data: dict[str, Any]) -> str | None:
    value = data.pop("request_id", None)
    return str(value) if value else None
