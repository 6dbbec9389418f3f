"""The store: models, engine and sessions, migrations, state vocabulary, and the reads every interface shares."""
