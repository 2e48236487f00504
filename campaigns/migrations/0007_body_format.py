from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0006_sender_identity_status"),
    ]

    operations = [
        # Campaigns written before the body format existed were HTML; new ones default to Markdown.
        migrations.AddField(
            model_name="campaign",
            name="body_format",
            field=models.CharField(
                choices=[
                    ("markdown", "Markdown"),
                    ("rich_text", "Rich text"),
                    ("html", "HTML (Jinja2, for experts)"),
                ],
                default="html",
                max_length=10,
            ),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="campaign",
            name="body_format",
            field=models.CharField(
                choices=[
                    ("markdown", "Markdown"),
                    ("rich_text", "Rich text"),
                    ("html", "HTML (Jinja2, for experts)"),
                ],
                default="markdown",
                max_length=10,
            ),
        ),
        migrations.AlterField(
            model_name="campaign",
            name="html_body",
            field=models.TextField(
                blank=True, help_text="The body as written, in the campaign's body format."
            ),
        ),
    ]
