-- migrate:up
CREATE TABLE prompts (
  id serial PRIMARY KEY,
  title text NOT NULL,
  body text NOT NULL
);
INSERT INTO prompts (title, body) VALUES ('hello', 'Say hello.');

-- migrate:down
DROP TABLE prompts;
