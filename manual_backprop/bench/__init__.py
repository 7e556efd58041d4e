"""``report``: the benchmark report, a Markdown table and a plot from pytest-benchmark's JSON (:mod:`.report`)."""
