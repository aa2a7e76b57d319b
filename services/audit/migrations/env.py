from services.audit.models import Base
from shared import alembic_env

alembic_env.run(Base.metadata)
