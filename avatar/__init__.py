"""The speaking face: voice, face geometry, driving clip, motion planning, rendering, export and the CLI."""
