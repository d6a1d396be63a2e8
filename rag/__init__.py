"""Answering: retrieved catalog descriptions in the Alpaca prompt, a (fine-tuned) small Llama answers.

    from rag.answer import Answerer
    qa = Answerer("data/index", adapter="data/adapter")   # models load here, once
    a = qa.ask("What is 'Mog's Kittens'?")               # Answer(text, sources, abstained, ...)

Modules: prompt (the one prompt builder), model (base model, 4-bit loading, adapter folders), answer
(retrieve -> prompt -> generate -> Answer), batching, merge, serve, remote, batch, evaluate.
"""
