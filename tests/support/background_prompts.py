"""Chat UIs' background prompts as they send them: the layout and opening lines of their default templates."""

from __future__ import annotations

LINK = "http://127.0.0.1:8080/clip.mp4"
HISTORY = f"<chat_history>\nUSER: what happens in {LINK}?\nASSISTANT: The bars scroll left.\n</chat_history>"


def webui(task_line: str, output: str) -> str:
    """The layout of Open WebUI's task templates (open_webui/config.py), conversation quoted at the end."""
    return f"### Task:\n{task_line}\n### Guidelines:\n- be brief\n### Output:\n{output}\n### Chat History:\n{HISTORY}"


# The opening lines of the clients' default templates, as their sources have them (several versions).
BACKGROUND = [
    (webui("Generate a concise title summarizing the chat history.", 'JSON format: { "title": "…" }'),
     ("open-webui", "title")),
    (webui("Generate a concise, 3-5 word title with an emoji summarizing the chat history.", '{ "title": "…" }'),
     ("open-webui", "title")),
    (webui("Generate 1-3 broad tags categorizing the main themes of the chat history, along with 1-3 more "
           "specific subtopic tags.", 'JSON format: { "tags": ["tag1"] }'), ("open-webui", "tags")),
    (webui("Predict 3-5 useful messages this user might naturally send next to advance their current objective.",
           'JSON format: { "follow_ups": ["Suggested next message 1"] }'), ("open-webui", "follow_ups")),
    (webui("Suggest 3-5 relevant follow-up questions or prompts that the user might naturally ask next.",
           'JSON format: { "follow_ups": ["Question 1?"] }'), ("open-webui", "follow_ups")),
    (webui("Analyze the chat history to determine the necessity of generating search queries, in the given "
           "language.", '{ "queries": ["query1"] }'), ("open-webui", "queries")),
    ("### Task:\nYou are an autocompletion system. Continue the text in `<text>` based on the completion type.\n"
     f"### Context:\n{HISTORY}\n<type>General</type>\n<text>what happens in {LINK}</text>\n#### Output:\n",
     ("open-webui", "autocomplete")),
    (f"Provide a concise, 5-word-or-less title for the conversation, using title case conventions. Only return "
     f"the title itself.\n\nConversation:\nUser: what happens in {LINK}?\nAI: The bars scroll left.",
     ("librechat", "title")),
    (f"Analyze this conversation and provide:\n1. The detected language of the conversation\n2. A concise title in "
     f"the detected language (5 words or less, no punctuation or quotation)\n\nUser: what happens in {LINK}?",
     ("librechat", "title")),
    ("You are asked to generate a concise chat title by decomposing the user’s input into two parts: “Intention” "
     'and “Subject”.\n…\n{\n"Language Type": "…",\n"Your Reasoning": "…",\n"Your Output": "…"\n}\n\n'
     f"User Input:\nwhat happens in {LINK}?\n", ("dify", "title")),
    (f"Human: what happens in {LINK}?\nAssistant: The bars scroll left.\nPlease help me predict the three most "
     "likely questions that human would ask, and keep each question under 20 characters.\n"
     '["question1","question2","question3"]\nquestions:\n', ("dify", "suggested_questions")),
]
