"""Real local servers and hand-written fakes shared by the test suites."""
