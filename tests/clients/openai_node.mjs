// An unchanged openai-node client: `new OpenAI()` with nothing but OPENAI_API_KEY (and, in the
// reverse-mode recipe, the SDK's own OPENAI_BASE_URL). Whatever it does differently comes from the
// environment or the network.
//
//   node openai_node.mjs ENTRY TEXT
// ENTRY is the file URL of the installed package's ESM entry (the package lives in .tools/, outside
// this folder's module search path). Prints one JSON object:
// {"chat": answer, "stream": assembled deltas, "chunks": n, "responses": output_text, "events": [types]}.
const [entry, text] = process.argv.slice(2);
const { default: OpenAI } = await import(entry);
const client = new OpenAI({ maxRetries: 0, timeout: 30000 });
const expected = process.env.OPENAI_BASE_URL ?? "https://api.openai.com/v1"; // the SDK's own variable
if (client.baseURL !== expected) throw new Error(`base URL ${client.baseURL}, expected ${expected}`);
const messages = [{ role: "user", content: text }];
const out = {};
const chat = await client.chat.completions.create({ model: "gpt-4o", messages });
out.chat = chat.choices[0].message.content;
let parts = "";
out.chunks = 0;
for await (const chunk of await client.chat.completions.create({ model: "gpt-4o", messages, stream: true })) {
  out.chunks += 1;
  parts += chunk.choices[0]?.delta?.content ?? "";
}
out.stream = parts;
out.events = [];
const stream = await client.responses.create({ model: "gpt-4o", input: text, stream: true });
let final = null;
for await (const event of stream) {
  out.events.push(event.type);
  if (event.type === "response.completed") final = event.response;
}
out.responses = final ? final.output.flatMap((i) => i.content ?? []).map((c) => c.text ?? "").join("") : null;
console.log(JSON.stringify(out));
