"""Reports to the authority for every NIS2 stage: the JSON payload, Markdown, PDF and chart."""
