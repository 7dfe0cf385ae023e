// The official TypeScript MCP SDK as a client, started the way a client app starts a server.
//   node sdk_client.mjs '{"entry": <a config-snippet mcpServers entry>, "tool": "echo", "arguments": {...}}'
// A stdio entry is spawned by StdioClientTransport with no `env`, so the SDK's default environment
// (HOME, LOGNAME, PATH, SHELL, TERM, USER) is all it gets; a `url` entry uses Streamable HTTP.
// Prints {"tools": [...names], "result": <the tools/call result>} as one JSON line.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const spec = JSON.parse(process.argv[2]);
const entry = spec.entry;
const transport = entry.url
  ? new StreamableHTTPClientTransport(new URL(entry.url))
  : new StdioClientTransport({ command: entry.command, args: entry.args ?? [], stderr: "inherit" });
const client = new Client({ name: "mcp-supervisor-test", version: "1.0.0" });
const timer = setTimeout(() => { console.error("timed out"); process.exit(3); }, 60000);
await client.connect(transport);
const tools = await client.listTools();
const result = await client.callTool({ name: spec.tool, arguments: spec.arguments ?? {} });
console.log(JSON.stringify({ tools: tools.tools.map((t) => t.name), result }));
await client.close();
clearTimeout(timer);
