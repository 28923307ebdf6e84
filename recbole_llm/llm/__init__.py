"""The one home of LLM access shared by MLTFR, LUMOS and L3Rec."""
