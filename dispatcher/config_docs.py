"""One line per reports.yaml key, for the JSON Schema (`dispatcher schema`) and editors' hover text.

Kept apart from config.py so that adding a key there stays a one-line change; a test fails when a
model field has no line here. The README's "reports.yaml reference" is the long form.
"""

from __future__ import annotations

from typing import Any

# Model fields that are filled by the loader, never written in reports.yaml.
INTERNAL = frozenset({"Config.path", "Report.id", "DingTalkConfig.missing_vars", "RobotConfig.missing_vars"})

DESCRIPTIONS: dict[str, str] = {
    "Config.timezone": "Default IANA time zone of every report, e.g. Asia/Shanghai.",
    "Config.sources": "Source name -> SQLAlchemy URL (SQLite, PostgreSQL or MySQL/MariaDB).",
    "Config.dingtalk": "The DingTalk internal app that sends the work notifications.",
    "Config.recipients": "Group name -> userids, mobiles and dept_ids; `admins` receives the alerts.",
    "Config.reports": "Report id -> report.",
    "Config.state": "SQLAlchemy URL of the state store (default: .dispatcher/state.db beside this file).",
    "Config.daemon": "Settings of `dispatcher run`.",
    "DingTalkConfig.app_key": "The app's AppKey, usually ${DINGTALK_APP_KEY}.",
    "DingTalkConfig.app_secret": "The app's AppSecret, usually ${DINGTALK_APP_SECRET}; never logged.",
    "DingTalkConfig.agent_id": "The app's AgentID, usually ${DINGTALK_AGENT_ID}.",
    "DingTalkConfig.api_base": "API base URL (default: $DINGTALK_API_BASE, else https://oapi.dingtalk.com).",
    "DingTalkConfig.calls_per_second": "Calls per second per API endpoint (DingTalk allows 20).",
    "DingTalkConfig.recipients_per_minute": "Recipients per minute for the app (DingTalk allows 5000).",
    "DingTalkConfig.max_msg_bytes": "Size budget of a message's msg JSON in bytes (DingTalk allows 2048).",
    "DingTalkConfig.monthly_quota": "The organisation's monthly API quota; 0: unlimited (paid editions).",
    "DingTalkConfig.receipts": "How receipts are read: result (1 call per task), full (up to 3) or off.",
    "DingTalkConfig.receipt_wait": "Wait before reading a receipt: seconds or a duration such as 5s.",
    "RecipientGroup.userids": "DingTalk userids; quote numeric ones so YAML keeps leading zeros.",
    "RecipientGroup.mobiles": "11-digit mainland mobiles, resolved with getbymobile and cached 7 days.",
    "RecipientGroup.dept_ids": "Department ids; DingTalk includes sub-departments.",
    "Report.title": "What the notification and the conversation list show (1 to 64 characters).",
    "Report.schedule": "A 5-field cron line such as '0 9 * * *', or {every: 30s | 15m | 2h | 1d}.",
    "Report.timezone": "The report's own IANA time zone (default: the top-level timezone).",
    "Report.source": "A name from sources.",
    "Report.query": "A .sql file under queries/; give exactly one of query and sql.",
    "Report.sql": "Inline SQL; give exactly one of query and sql.",
    "Report.params": "Name -> value bound as :name; strings may use date macros like {{ yesterday }}.",
    "Report.to": "Recipient group names.",
    "Report.on_empty": "When the query returns no rows: skip, send (暂无数据) or error.",
    "Report.template": "Jinja2 markdown template; without it the default rendering is used.",
    "Report.period": "The data's period shown under the heading, e.g. '{{ yesterday }}'.",
    "Report.msgtype": "markdown, text (plain text) or action_card (markdown plus one button).",
    "Report.action_url": "The action card's button link: http(s) or dingtalk://dingtalkclient/...",
    "Report.action_title": "The action card's button text (1 to 20 characters).",
    "Report.formats": "Column -> number, integer, percent, currency, text or date.",
    "Report.labels": "Column -> display label.",
    "Report.query_timeout": "Time limit of the query: seconds or a duration (1s to 1d).",
    "Report.max_rows": "Row cap; fetching stops there and the message says the result was cut.",
    "Report.max_bytes": "Size cap of the result as read: bytes or a size such as 512KB, 64MB, 1GB.",
    "Report.enabled": "false keeps the report in the file but never schedules it.",
    "Report.catchup": "Missed fire times within grace: last (run the newest), all, or none.",
    "Report.grace": "How late a missed fire time may still run: seconds or a duration.",
    "Report.retries": "Retries of a failed run after the first attempt; 0 fails and alerts at once.",
    "Report.retry_delay": "The first retry's delay (doubling after): seconds or a duration.",
    "Report.run_timeout": "A run not finished after this is abandoned and counts as failed.",
    "Report.run_on_start": "With no ledger row yet, run the last fire time at once when the daemon starts.",
    "Report.receipts": "This report's receipts mode: full, result or off (default: dingtalk.receipts).",
    "Report.robots": "Robot names from the top-level robots: the report also goes to those group chats.",
    "Report.mention": "Who the group message @mentions: mobiles, userids (at most 50 each), all.",
    "Mention.mobiles": "Mobiles to @mention in the group message.",
    "Mention.userids": "Userids to @mention in the group message.",
    "Mention.all": "true: @all (isAtAll).",
    "Config.robots": "Robot name -> a group chat's custom robot (webhook, secret, keyword).",
    "RobotConfig.webhook": "The robot's webhook URL, usually ${...}: it holds the robot's access_token.",
    "RobotConfig.secret": "The robot's signing secret (SEC...): every request is signed; never logged.",
    "RobotConfig.keyword": "The robot's security keyword; validate checks every message contains it.",
    "RobotConfig.max_msg_bytes": "The group message's size budget in bytes (default 20000).",
    "Report.alert": "Makes the report an alert: rows mean firing; repeat and recovery messages.",
    "Report.split_by": "One message per distinct value of a column, each to the person that value names.",
    "AlertSpec.repeat": "While still firing, remind at most this often (a duration; default: never).",
    "AlertSpec.recovery": "Send one message when a firing alert's query returns no rows again.",
    "AlertSpec.recovery_template": "The recovery message; {{ title }} and {{ duration }} are available.",
    "SplitBy.column": "The result column whose values name the recipients.",
    "SplitBy.kind": "What the column holds: userid or mobile.",
    "SplitBy.max_slices": "Most distinct values a run may send to; past it the run fails (default 2000).",
    "DaemonConfig.workers": "Reports that can run at the same time.",
    "DaemonConfig.source_concurrency": "Queries at the same time per source.",
    "DaemonConfig.retention": "How long ledger rows are kept: seconds or a duration such as 90d.",
    "DaemonConfig.alert_interval": "At most one failure alert per report per interval.",
    "DaemonConfig.shutdown_timeout": "How long a warm shutdown waits for running runs.",
    "DaemonConfig.heartbeat": "How often the daemon logs a daemon.heartbeat line.",
    "DaemonConfig.max_wait": "/healthz answers 503 while a due run waited longer than this for a worker.",
}

# What YAML may give where the model's own type says less: validators that accept more than it.
INPUTS: dict[str, dict[str, Any]] = {
    "Report.schedule": {
        "anyOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "object",
                "properties": {"every": {"type": ["string", "number"]}},
                "required": ["every"],
                "additionalProperties": False,
            },
        ]
    },
    # An unquoted mobile is a YAML integer; the validator turns it into text.
    "RecipientGroup.mobiles": {"type": "array", "items": {"type": ["string", "integer"]}},
}
