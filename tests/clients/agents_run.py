"""An unchanged OpenAI Agents SDK program: an agent with one function tool, run once through the
Responses API (the SDK's default), with nothing but OPENAI_API_KEY set. Tracing stays on, as by default.

    python agents_run.py TEXT
Prints one JSON object: {"final": final output, "tool_calls": [arguments the tool was called with]}."""

import json
import sys

from agents import Agent, Runner, function_tool

calls = []


@function_tool
def get_weather(location: str) -> str:
    """The weather at a place."""
    calls.append(location)
    return f"sunny-in-{location}"


agent = Agent(name="weather", instructions="Answer with the tool.", model="gpt-4o", tools=[get_weather])
result = Runner.run_sync(agent, sys.argv[1])
print(json.dumps({"final": result.final_output, "tool_calls": calls}))
