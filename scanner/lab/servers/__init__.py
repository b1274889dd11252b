"""The lab's servers: DNS, SMTP, HTTPS (MTA-STS), the stripping proxy, workers, control.
May import scanner.lab.population and the scanner packages the lab may."""
