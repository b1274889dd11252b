"""The phases (resolve, probe, policy stage, rollup), the streaming pipeline, resume, vantage.
May import every package below it: model, config, sink, inputs, dns, tls, smtp, policy."""
