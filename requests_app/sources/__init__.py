"""Source connectors (SQL, HTTP, manual): finding, gathering and erasing a person's data in the company's systems, with dataset maps and categories. They know nothing of requests or pages."""
