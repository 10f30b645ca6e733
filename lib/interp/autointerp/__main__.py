"""`python -m interp.autointerp --model smollm2-135m --port 8000`: serve a local model over the
OpenAI chat-completions protocol (see `interp.autointerp.server`)."""

from interp.autointerp.server import main

main()
