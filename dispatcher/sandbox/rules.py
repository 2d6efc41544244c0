"""DingTalk's request rules for asyncsend_v2, as pure functions: body in, request or refusal out.

Error codes and texts follow DingTalk's global error-code list and the per-API pages
(docs/dingtalk-api.md sections 3, 5 and 7).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from dispatcher.dingtalk.message import MAX_MSG_BYTES, msg_bytes

MAX_USERIDS = 100
MAX_DEPT_IDS = 20
MOBILE = re.compile(r"1[3-9]\d{9}")
ARGB = re.compile(r"[0-9A-Fa-f]{8}")  # an OA head's bgcolor: alpha then RGB, no 0x
TO_ALL_PER_DAY = 3  # messages to the whole company (to_all_user) per app per day: 41045 beyond

ERRMSG: dict[int, str] = {
    -1: "系统繁忙",
    33012: "无效的USERID",
    40001: "获取access_token时Secret错误，或者access_token无效",
    40014: "不合法的access_token",
    40035: "不合法的参数",
    40056: "不合法的agentid",
    40089: "不合法的corpid或corpsecret",
    40096: "不合法的appKey或appSecret",
    40104: "企业中无效的手机号",
    41001: "缺少access_token参数",
    42001: "access_token超时",
    43001: "需要GET请求",
    43002: "需要POST请求",
    60011: "没有调用该接口的权限",
    60020: "访问ip不在白名单之中",
    60121: "找不到该用户",
    90002: "您的服务器调用钉钉开放平台当前接口的所有请求都被暂时禁用了",
    90018: "api frequency limit",
    90020: "调用量已超过月度配额",
    400002: "无效的参数",
    # media/upload and the media_id in image, file and OA messages [upload-media-files]
    40004: "不合法的媒体文件类型",
    40005: "不合法的文件类型",
    40006: "不合法的文件大小",
    40007: "不合法的媒体文件id",
    41005: "缺少多媒体文件数据",
    41045: "单应用全员消息/每天总量超限",
}

# The /topapi/* gateway answers these wrapped in errcode 88 (dingtalk-api.md, "Wrapped errors").
WRAPPED = frozenset({40001, 40014, 41001, 42001, 90018, 90002, 90020, 60011})
GATEWAY = 88

# The fields each msgtype must carry [message-types-and-data-format].
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("content",),
    "markdown": ("title", "text"),
    "action_card": ("title", "markdown"),
    "oa": ("message_url", "head", "body"),
    "link": ("messageUrl", "picUrl", "title", "text"),
    "image": ("media_id",),
    "file": ("media_id",),
}


@dataclass(frozen=True)
class Refusal:
    """An errcode answer. `detail` names the offending field, as DingTalk's errmsg does."""

    errcode: int
    detail: str = ""

    @property
    def errmsg(self) -> str:
        base = ERRMSG.get(self.errcode, "sandbox forced error")
        return f"{base}: {self.detail}" if self.detail else base


def envelope(refusal: Refusal, form: str) -> dict[str, Any]:
    """A /topapi/* refusal as the real gateway answers it. `form`: how the sub code travels
    (`string`, `number`, `errmsg` only inside errmsg, or `plain`: not wrapped at all)."""
    # Codes the sandbox has no text for stand for the gateway's other sub codes: wrapped too.
    if form == "plain" or (refusal.errcode not in WRAPPED and refusal.errcode in ERRMSG):
        return {"errcode": refusal.errcode, "errmsg": refusal.errmsg}
    answer: dict[str, Any] = {
        "errcode": GATEWAY,
        "errmsg": f"ding talk error[subcode={refusal.errcode},submsg={refusal.errmsg}]",
    }
    if form != "errmsg":
        answer["sub_code"] = refusal.errcode if form == "number" else str(refusal.errcode)
        answer["sub_msg"] = refusal.errmsg
    return answer


@dataclass(frozen=True)
class SendRequest:
    agent_id: int
    userids: list[str]
    dept_ids: list[int]
    to_all_user: bool
    msg: dict[str, Any]


def parse_agent_id(body: dict[str, Any], agent_id: int) -> Refusal | None:
    """agent_id must be the app's; DingTalk accepts it as a number or a numeric string."""
    raw = body.get("agent_id")
    if raw is None or raw == "":
        return Refusal(40035, "缺少参数 agent_id")
    try:
        value = int(str(raw).strip())
    except ValueError:
        return Refusal(40056, f"agent_id {str(raw)[:40]!r} is not a number")
    return None if value == agent_id else Refusal(40056)


def parse_send(body: dict[str, Any], agent_id: int) -> SendRequest | Refusal:
    refusal = parse_agent_id(body, agent_id)
    if refusal:
        return refusal
    userids = _id_list(body, "userid_list", MAX_USERIDS)
    if isinstance(userids, Refusal):
        return userids
    dept_ids = _id_list(body, "dept_id_list", MAX_DEPT_IDS)
    if isinstance(dept_ids, Refusal):
        return dept_ids
    try:
        depts = [int(d) for d in dept_ids]
    except ValueError:
        return Refusal(40035, "dept_id_list must hold numeric department ids")
    to_all = str(body.get("to_all_user", "")).strip().lower() == "true"
    if not userids and not depts and not to_all:
        return Refusal(40035, "userid_list 与 dept_id_list 不能同时为空 (or set to_all_user)")
    msg = parse_msg(body.get("msg"))
    if isinstance(msg, Refusal):
        return msg
    return SendRequest(int(str(body["agent_id"]).strip()), userids, depts, to_all, msg)


def _id_list(body: dict[str, Any], name: str, limit: int) -> list[str] | Refusal:
    """A comma-joined string, as DingTalk defines the field; a JSON array is not accepted."""
    raw = body.get(name)
    if raw is None or raw == "":
        return []
    if isinstance(raw, int) and not isinstance(raw, bool) and name == "dept_id_list":
        raw = str(raw)
    if not isinstance(raw, str):
        return Refusal(40035, f"{name} must be a comma-joined string, not {type(raw).__name__}")
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    if len(ids) > limit:
        return Refusal(40035, f"{name} holds {len(ids)} ids, at most {limit} are allowed")
    return ids


def parse_msg(raw: Any) -> dict[str, Any] | Refusal:
    """The msg object (JSON text in form bodies): within 2048 bytes, a known, complete msgtype."""
    if raw is None or raw == "":
        return Refusal(40035, "缺少参数 msg")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return Refusal(40035, "msg is not valid JSON (a Python repr with single quotes is not JSON)")
    if not isinstance(raw, dict):
        return Refusal(40035, "msg must be a JSON object")
    size = msg_bytes(raw)
    if size > MAX_MSG_BYTES:
        return Refusal(40035, f"msg too large: {size} bytes, at most {MAX_MSG_BYTES}")
    problem = msg_problem(raw)
    return Refusal(400002, problem) if problem else raw


def msg_problem(msg: dict[str, Any]) -> str | None:
    msgtype = msg.get("msgtype")
    if msgtype not in REQUIRED_FIELDS:
        known = ", ".join(REQUIRED_FIELDS)
        return f"msg.msgtype {str(msgtype)[:40]!r} is not one of {known}"
    content = msg.get(msgtype)
    if not isinstance(content, dict):
        return f"msg.{msgtype} is missing or not an object"
    for name in REQUIRED_FIELDS[msgtype]:
        if content.get(name) in (None, "", {}, []):
            return f"msg.{msgtype}.{name} is required"
    if msgtype == "action_card" and not _has_buttons(content):
        return "msg.action_card needs single_title and single_url, or btn_json_list"
    return _oa_head_problem(content.get("head")) if msgtype == "oa" else None


def _oa_head_problem(head: Any) -> str | None:
    """[message-types-and-data-format] head.bgcolor (8 hex digits, ARGB) and head.text are required."""
    if not isinstance(head, dict):
        return "msg.oa.head must be an object with bgcolor and text"
    color = head.get("bgcolor")
    if not isinstance(color, str) or not ARGB.fullmatch(color):
        return f"msg.oa.head.bgcolor {str(color)[:20]!r} must be 8 hex digits (alpha then RGB, no 0x)"
    if not isinstance(head.get("text"), str) or not head["text"]:
        return "msg.oa.head.text is required"
    return None


def _has_buttons(card: dict[str, Any]) -> bool:
    single = bool(card.get("single_title")) and bool(card.get("single_url"))
    buttons = card.get("btn_json_list")
    return single or (isinstance(buttons, list) and len(buttons) > 0)


def canonical(msg: dict[str, Any]) -> str:
    """The content identity behind the same-content-once-a-day rule: key order does not matter."""
    return json.dumps(msg, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def valid_mobile(mobile: Any) -> bool:
    return isinstance(mobile, str) and MOBILE.fullmatch(mobile) is not None
