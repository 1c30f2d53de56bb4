"""Machine interfaces: the endpoint where HTTP sources deliver asynchronous replies."""
