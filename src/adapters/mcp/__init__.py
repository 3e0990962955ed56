"""The MCP adapter: `run_python` over the Model Context Protocol (streamable HTTP and stdio).

Another door to the same use case as `POST /execute`: the tool's arguments go through the same
validation (`parse_execute_body`), the same `ExecuteScript` (same slots, queue and limits) and,
over HTTP, the same API keys; the answers are the same JSON bodies, as a tool result."""
