"""reports.yaml: the model, loading and checking, and what the file may refer to.

Entry points: `check.load_config` and `check.check_config` (every problem at once, with
file:line), `model.Config` and `model.Report`. `yamlfile` is the safe YAML loader that keeps line
numbers, `environment` reads `.env` and `NAME_FILE` secrets, `params` evaluates `params:` values,
`secrets` keeps credential variables out of messages, `rich` holds charts, attachments and OA
cards, `words` turns validation errors into the project's own words, `schema` and `docs` make the
JSON Schema (`reports.schema.json`) that editors check the file against.

May import: sources, robot, templating, schedule and the top-level helpers; never rendering,
delivery or the daemon.
"""
