"""The bounded Jinja sandbox that templates, `params:` and recovery messages render in.

Entry points: `bounded` (the environment: autoescape, a render deadline, a loop budget, string
caps from `limits`), `recovery` (the one-line recovery message of an alert). It imports Jinja only,
so `validate` can check templates without loading pandas.

May import: the top-level helpers only.
"""
