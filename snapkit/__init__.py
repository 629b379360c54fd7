"""snapkit: teach a computer to recognise your own sounds."""
__version__ = "0.1.0"
