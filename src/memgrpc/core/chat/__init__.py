"""Chat with memory: context assembly (and its DEEP strategy), the streamed turn, background
turns, and the replay that makes a retried turn never run twice."""
