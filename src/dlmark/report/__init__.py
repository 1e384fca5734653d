"""The static report site and the text tables every reader prints."""
