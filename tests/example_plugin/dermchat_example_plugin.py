"""An example third-party DermChat plugin (see README "Writing a plugin").

Install it with ``pip install tests/example_plugin`` and choose it with ``DERMCHAT_EXPLAINER=echo-explainer``.
"""

from __future__ import annotations

from dermchat.hookspecs import hookimpl
from dermchat.providers import Explainer
from dermchat.results import Explanation
from dermchat.vocabulary import get_vocabulary


class EchoExplainer(Explainer):
    id = "echo-explainer"
    label = "Echo explainer (example plugin)"
    version = "0.1.0"

    def explain(self, ctx):
        vocab = get_vocabulary()
        names = [vocab.get(c).name(ctx.audience) for c in ctx.top_conditions[:3]]
        text = "The image model's top conditions: " + ", ".join(names) if names else "No image result yet."
        return Explanation(provider_id=self.id, text=text)


@hookimpl
def register_explainers(register):
    register(EchoExplainer())
