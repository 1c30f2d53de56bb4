"""The demo company: its customer database, loyalty service, paper archive and their dataset maps (`make run`)."""
