"""`python -m vlm_demo deploy`: build a Hugging Face Space's folder from the Spacefile manifest and upload it."""
