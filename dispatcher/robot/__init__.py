"""The second channel: a group chat's custom robot (自定义机器人), next to work notifications.

`webhook` checks and signs webhook URLs, `message` turns a rendered report into the robot's message
(mentions, msgUuid, keyword), `errors` says what each robot errcode means, `client` sends one
message paced and retried, and `deliver` sends a run's messages to its robots as ledger units.

May import: dingtalk and the top-level helpers (delivering a run to robots is `run.robots`).
"""
