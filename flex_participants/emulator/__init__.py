"""A loopback emulator of Flex's "List all Participants for a Channel" endpoint."""
