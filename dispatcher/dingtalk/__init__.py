"""The DingTalk server API client for work notifications (工作通知).

Entry point: `client.DingTalkClient` (token, userids by mobile, asyncsend_v2 in batches of 100,
media upload, receipts). Below it: `transport` (one HTTP call, retries, pacing), `message` (the
msg shapes and the 2048-byte budget), `markdown` (DingTalk's markdown subset, read and escaped in
one place), `errors` and `results`.

May import: the top-level helpers only; never the store, the config or rendering.
"""
