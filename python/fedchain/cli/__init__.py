"""The `fedchain` command. Each subcommand group lives in its own module and is registered in main.py."""
