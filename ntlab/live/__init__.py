"""Live trading: engine, paper venue, risk, journal."""
