"""One test module per finding of the customer security review (issue 16), each against PostgreSQL."""
