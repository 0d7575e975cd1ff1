"""NIS2 knowledge: who the entity is, which incidents are significant, when reports are due."""
