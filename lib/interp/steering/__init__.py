"""Activation steering with SAEs (GDM Progress Update #1, snippet 1; ActAdd, Turner et al. 2023).

    from interp.steering import actadd, decompose, variants, sweep
    pair = actadd.prompt_pair(model, "Anger", "Calm")               # padded with " "
    h_A = actadd.actadd_vector(model, "blocks.6.resid_post", pair)  # [P, d]
    dec = decompose.decompose(model, "blocks.6.resid_post", sae, pair)
    dec.recon + dec.error == h_A
    actadd.generate(model, site, "I think you're", 4.0 * h_A[None])  # ActAdd sampling
    wedding = teacher_forced.Concept("wedding", (" wedding", " bride"))
    teacher_forced.run(model, site, prompts, [sweep.Point("orig", c, h_A) for c in (0, 2, 4)],
                       [wedding], neutral_tokens)  # log P(concept) per prompt, delta CE

Modules: `actadd` (vectors, padding sinks, hooks, batched steered generation), `decompose` (SAE
feature differences, reconstruction and error), `variants` (orig / recon / single / handpicked /
pruned / ablate), `teacher_forced` (the effect: concept log-probability after a prompt),
`evaluate` (the cost: steered delta CE), `lexicons` (concept words, labels), `sweep` (points and
matched-cost comparisons).
"""

from interp.steering import (actadd, decompose, evaluate, lexicons, sweep, teacher_forced,
                             variants)
from interp.steering.actadd import ACTADD_SAMPLING, PromptPair, actadd_vector, prompt_pair
from interp.steering.decompose import Decomposition

__all__ = ["actadd", "decompose", "evaluate", "lexicons", "sweep", "teacher_forced", "variants",
           "ACTADD_SAMPLING",
           "PromptPair", "Decomposition", "actadd_vector", "prompt_pair"]
