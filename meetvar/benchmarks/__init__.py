"""The benchmarks behind ``meetvar bench`` (meetvar.commands.bench), each printing JSON: pose and the
live pipeline (``pipeline``), ingest (``ingest``), pose-worker scale-out (``workers``), fuzzing
(``fuzz``), the embedded broker's cost (``broker_cost``), and those that drive a whole running demo
(``demo_run``): faults on purpose (``chaos``) and a soak (``soak``)."""
