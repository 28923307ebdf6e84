"""Entry points on top of the package (the Flower app); nothing below imports them."""
