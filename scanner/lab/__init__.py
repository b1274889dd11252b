"""The simulated mail internet on loopback: population, servers, ground truth, `lab serve`.
May import scanner.model, config, sink, inputs, dns and tls; only scanner.commands imports it."""
