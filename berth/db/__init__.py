"""PostgreSQL state: typed models, sessions and one repository per aggregate."""
