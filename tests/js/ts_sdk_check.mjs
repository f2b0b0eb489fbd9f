// The official TypeScript SDK, unchanged, through trioproxy: JSON, stream, error.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ baseURL: process.env.BASE_URL, apiKey: "sk-ant-test", maxRetries: 0 });
const out = {};
const msg = await client.messages.create({ model: "claude-opus-4-7", max_tokens: 64, messages: [{ role: "user", content: "hi" }] });
out.json_text = msg.content[0].text;
const stream = client.messages.stream({
  model: "claude-opus-4-7", max_tokens: 64, messages: [{ role: "user", content: "hi" }],
  tools: [{ name: "get_weather", description: "w", input_schema: { type: "object", properties: {} } }],
});
out.events = [];
for await (const ev of stream) out.events.push(ev.type);
const final = await stream.finalMessage();
out.stream_text = final.content.filter((b) => b.type === "text").map((b) => b.text).join("");
out.tool_input = final.content.filter((b) => b.type === "tool_use").map((b) => b.input)[0];
out.usage = final.usage;
try {
  await client.messages.create(
    { model: "claude-opus-4-7", max_tokens: 5, messages: [{ role: "user", content: "x" }] },
    { headers: { "x-fake-fault": "429=4" } },
  );
  out.error = "none";
} catch (e) {
  out.error = { status: e.status, type: e.error?.error?.type, retry_after: e.headers?.get ? e.headers.get("retry-after") : e.headers?.["retry-after"] };
}
console.log(JSON.stringify(out));
