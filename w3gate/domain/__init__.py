"""Plain values of the pinning service (what a pin request is, what a list asks for, what is stored), shared by
admission, the API and the store; they import nothing of w3gate's."""
