"""Helpers the tests share: real servers and workers (harness), the loopback web server,
test images, role-template rendering, test-only tasks. Nothing here is collected as a test."""
