"""``plexus infer`` over many cases: finding them (:mod:`.cases`), the typed options (:mod:`.options`), the output
folder and its claims (:mod:`.folder`), one case (:mod:`.case`), the local runner (:mod:`.local`) and the Ray one
(:mod:`.ray_runner`), the run record (:mod:`.record`) and summaries (:mod:`.summary`), and ``plexus demo``
(:mod:`.demo`)."""
