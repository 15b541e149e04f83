"""The report stage: metrics files -> document blocks -> Markdown and HTML."""
