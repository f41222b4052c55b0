"""XTuner v1's module path `xtuner.v1.module`: the attention and RoPE configs of a dense decoder
(`attention.mha.MHAConfig`, `rope.rope.RopeParametersConfig`), used by `xtuner_nb.model.TransformerConfig`."""
