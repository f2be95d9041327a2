"""The face swap: a DeepFaceLab-style DF model trained on the subject's (synthetic) faces, merged onto a driving clip."""
