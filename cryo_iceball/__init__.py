"""Cryoablation ice-ball modelling: Pennes bioheat with phase change and empirical isotherms."""
